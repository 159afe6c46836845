-- split_customers: every customer of split_features with its side (in_test: a seeded hash of its
-- customer_id, out of 1,000,000 buckets, below $cut) and whether it is in the training sample:
-- at most $max_rows of the training side (0 = all), drawn per label class in proportion to its
-- size (stratified) by a second seeded hash. The hash is md5_number_lower's UBIGINT, computed
-- directly (the macro is about 7 times slower). $seed: the seed, as text.
CREATE OR REPLACE TEMP TABLE split_customers AS
WITH sides AS (
    SELECT
        customer_id,
        churned,
        (md5_number(customer_id || '/' || $seed) >> 64)::UBIGINT % 1000000 < $cut AS in_test,
        (md5_number(customer_id || '/sample/' || $seed) >> 64)::UBIGINT AS draw
    FROM split_features
),

ranked AS (
    SELECT
        *,
        row_number() OVER (PARTITION BY in_test, churned ORDER BY draw, customer_id) AS rank,
        count(*) OVER (PARTITION BY in_test, churned) AS class_rows,
        count(*) OVER (PARTITION BY in_test) AS side_rows
    FROM sides
)

SELECT
    customer_id,
    churned,
    in_test,
    in_test OR $max_rows = 0 OR side_rows <= $max_rows OR rank <= CASE
        WHEN churned = 1 THEN round($max_rows * class_rows / side_rows)
        ELSE $max_rows - round($max_rows * (side_rows - class_rows) / side_rows)  -- sums to max
    END AS in_sample
FROM ranked
