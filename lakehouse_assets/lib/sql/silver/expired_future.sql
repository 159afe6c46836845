-- The number of rows rejected as future events that are no longer in the future at $now: a
-- rebuild would keep them. Reads silver.rejected_transactions and the macro parse_event_time.
SELECT count(*) AS expired
FROM silver.rejected_transactions
WHERE reason = 'future_event_time' AND parse_event_time(event_time) <= $now
