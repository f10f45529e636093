-- Nothing reads lead_distribution by contract and time (the summary report reads it by time,
-- the post by ping): the index cost every ping one more index entry per contract, the
-- largest part of the ping's own write.
DROP INDEX lead_distribution_contract_time;
