-- db_tune fixture (MariaDB): what a neglected application database looks like.
-- Automatic statistics recalculation is off on these tables so that they stay stale until
-- db_tune acts.
CREATE TABLE customers (
    id integer PRIMARY KEY,
    name varchar(100) NOT NULL,
    email varchar(100) NOT NULL
) ENGINE=InnoDB STATS_AUTO_RECALC=0;
CREATE TABLE orders (
    id integer PRIMARY KEY,
    customer_id integer NOT NULL,
    status varchar(20) NOT NULL,
    -- a selective filter without an index
    reference varchar(40) NOT NULL,
    total decimal(10, 2) NOT NULL,
    created_at datetime NOT NULL,
    note varchar(200),
    KEY orders_status_idx (status),
    -- a duplicate index
    KEY orders_status_again_idx (status),
    -- an index nothing uses
    KEY orders_note_idx (note)
) ENGINE=InnoDB STATS_AUTO_RECALC=0;
INSERT INTO customers SELECT seq, CONCAT('customer ', seq), CONCAT('c', seq, '@example.com') FROM seq_1_to_20000;
INSERT INTO orders
    SELECT seq, 1 + (seq * 7919) % 20000, ELT(1 + seq % 3, 'open', 'paid', 'shipped'), CONCAT('REF-', seq),
           (seq % 1000) / 10.0, NOW() - INTERVAL seq MINUTE, NULL
    FROM seq_1_to_200000;
