-- active_days: each customer's number of days with a purchase, from customer_days.
CREATE OR REPLACE TEMP TABLE active_days AS
SELECT
    customer_id,
    count(*) AS active_days
FROM customer_days
GROUP BY customer_id
