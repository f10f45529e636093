-- Fair sharing between tenants (issue 14, item 8).

-- A contract beyond a ping's bound on bid requests (setting max_rtb_calls_per_ping) is
-- declined without a call. Checked before the call, so it comes before the RTB outcomes.
ALTER TYPE decline_reason ADD VALUE 'rtb_limit' BEFORE 'rtb_no_bid';

-- Admin keys are held in each server's configuration snapshot, so an unknown key is refused
-- without a query: a new key and a revoked one reach running servers as any configuration
-- change does (within milliseconds, at most 1 s).
CREATE TRIGGER api_keys_notify AFTER INSERT OR UPDATE OR DELETE ON api_keys
    FOR EACH ROW EXECUTE FUNCTION gavel_notify_config();
