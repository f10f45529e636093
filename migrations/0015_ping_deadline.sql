-- Issue 17: an offer's default deadline for its pings (`max_wait_ms`), in milliseconds; NULL:
-- none (each RTB call waits for its own contract's timeout). A ping may send its own.
ALTER TABLE offers ADD COLUMN max_wait_ms integer CHECK (max_wait_ms BETWEEN 10 AND 60000);
