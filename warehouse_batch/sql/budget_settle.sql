-- Collected batches settle: their reservation is replaced by what their attempts were billed
-- (view batch_costs, priced as the costs view prices them), in the transaction recording them.
-- One pass over the attempts for every batch of the transaction. Parameters: $now, $batch_ids.
UPDATE warehouse_batch.batches AS b SET settled_at = $now, billed_usd = c.cost_usd
FROM (SELECT batch_id, cost_usd FROM warehouse_batch.batch_costs
      WHERE batch_id IN (SELECT unnest($batch_ids::VARCHAR[]))) c
WHERE c.batch_id = b.batch_id
