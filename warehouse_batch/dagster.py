"""Dagster pieces for warehouse-batch (extra `[dagster]`): `WarehouseBatchResource`,
`enrichment_asset`, `enrichment_sensor`. See `warehouse_batch.integrations.dagster`."""
from __future__ import annotations

from .integrations.dagster import (WarehouseBatchResource, enrichment_asset,
                                   enrichment_sensor, materialize_job)

__all__ = ["WarehouseBatchResource", "enrichment_asset", "enrichment_sensor",
           "materialize_job"]
