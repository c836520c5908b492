-- db_tune fixture (PostgreSQL): what a neglected application database looks like.
-- Autovacuum is off on these tables so that the statistics stay stale until db_tune acts.
CREATE EXTENSION IF NOT EXISTS pg_stat_statements;
CREATE EXTENSION IF NOT EXISTS hypopg;
CREATE TABLE customers (
    id integer PRIMARY KEY,
    name text NOT NULL,
    email text NOT NULL
) WITH (autovacuum_enabled = false);
CREATE TABLE orders (
    id integer PRIMARY KEY,
    -- a foreign key without an index
    customer_id integer NOT NULL REFERENCES customers (id),
    status text NOT NULL,
    -- a selective filter without an index
    reference text NOT NULL,
    total numeric(10, 2) NOT NULL,
    created_at timestamptz NOT NULL,
    note text
) WITH (autovacuum_enabled = false);
CREATE INDEX orders_status_idx ON orders (status);
-- a duplicate index
CREATE INDEX orders_status_again_idx ON orders (status);
-- an index nothing uses
CREATE INDEX orders_note_idx ON orders (note);
INSERT INTO customers
    SELECT g, 'customer ' || g, 'c' || g || '@example.com' FROM generate_series(1, 20000) g;
INSERT INTO orders
    SELECT g, 1 + (g * 7919) % 20000, (ARRAY['open', 'paid', 'shipped'])[1 + g % 3], 'REF-' || g,
           (g % 1000) / 10.0, now() - make_interval(mins => g), NULL
    FROM generate_series(1, 200000) g;
