"""Airflow pieces for warehouse-batch (extra `[airflow]`): `WarehouseBatchOperator` and its
trigger. See `warehouse_batch.integrations.airflow`."""
from __future__ import annotations

from .integrations.airflow import WarehouseBatchOperator, WarehouseBatchTrigger

__all__ = ["WarehouseBatchOperator", "WarehouseBatchTrigger"]
