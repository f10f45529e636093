-- lead_distribution is read by ping only: the ping's view, the post, and the summary report,
-- which now finds its time range's pings in posting_log (posting_log_time) and their
-- contracts by this table's primary key. The time index cost every ping one index entry per
-- contract (8 % of the ping's own write at 30 contracts, by pgbench).
DROP INDEX lead_distribution_time;
