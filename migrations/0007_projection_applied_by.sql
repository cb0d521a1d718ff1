-- Which service process applied a read-model table's latest batch. Replicas
-- share the projection work batch by batch (each batch holds its checkpoint
-- row with FOR UPDATE SKIP LOCKED); operators and the fault suite see here
-- which replica is working each table and that the work moves when one dies.
ALTER TABLE projection_checkpoints ADD COLUMN applied_by text;
