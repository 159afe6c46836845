-- customers_to_recompute: the customers whose features can have changed since the last refresh:
-- those with silver_in_bucket rows ingested after $since, or with a purchase between the
-- previous and the new place of an edge ($previous_cutoff and $cutoff moved by the same days, a
-- minute either side): the cutoff, the start of each activity window ($window_1_days,
-- $window_2_days and $window_3_days before it) and the end of the label's horizon
-- ($horizon_days after it; 0 without a label). Only their rows can enter or leave the snapshot,
-- a window or the horizon.
CREATE OR REPLACE TEMP TABLE customers_to_recompute AS
SELECT DISTINCT customer_id
FROM silver_in_bucket
WHERE
    _ingested_at > $since
    OR event_time BETWEEN $previous_cutoff - INTERVAL 1 MINUTE AND $cutoff + INTERVAL 1 MINUTE
    OR event_time BETWEEN $previous_cutoff - to_days($window_1_days) - INTERVAL 1 MINUTE
    AND $cutoff - to_days($window_1_days) + INTERVAL 1 MINUTE
    OR event_time BETWEEN $previous_cutoff - to_days($window_2_days) - INTERVAL 1 MINUTE
    AND $cutoff - to_days($window_2_days) + INTERVAL 1 MINUTE
    OR event_time BETWEEN $previous_cutoff - to_days($window_3_days) - INTERVAL 1 MINUTE
    AND $cutoff - to_days($window_3_days) + INTERVAL 1 MINUTE
    OR event_time BETWEEN $previous_cutoff + to_days($horizon_days) - INTERVAL 1 MINUTE
    AND $cutoff + to_days($horizon_days) + INTERVAL 1 MINUTE
