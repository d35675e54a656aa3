-- How an asset's ladder was chosen (JSON): the per-title probe's trials and choices,
-- or why the fixed ladder was used. NULL for assets made before per-title ladders.
ALTER TABLE assets ADD COLUMN ladder_report TEXT;
