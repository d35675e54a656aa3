-- For the lecture's owner only: the last log lines of the fenced process that probed or
-- transcoded the file, with paths and addresses taken out.
ALTER TABLE lectures ADD COLUMN failure_diagnostics TEXT;
