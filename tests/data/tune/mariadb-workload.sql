-- db_tune workload (MariaDB): the application's hot statements.
SELECT id, total FROM orders WHERE reference = 'REF-$[1..200000]'
SELECT count(*) FROM orders WHERE customer_id = $[1..20000]
