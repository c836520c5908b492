-- db_tune workload (PostgreSQL): the application's hot statements.
SELECT id, total FROM orders WHERE reference = 'REF-$[1..200000]'
SELECT count(*) FROM orders WHERE customer_id = $[1..20000]
SELECT o.id, c.name FROM orders o JOIN customers c ON c.id = o.customer_id WHERE o.reference = 'REF-$[1..200000]'
