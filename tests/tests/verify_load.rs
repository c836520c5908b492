//! MariaDB verification sends a dump's rows as LOAD DATA instead of INSERT statements (the
//! server reads fields instead of parsing SQL). These tests prove the rewrite changes nothing:
//! the same dump restored the plain way (the `mariadb` client) and by verification's load holds
//! the same bytes in every column, for values chosen to break an escaping mistake; and a row the
//! server would change on the way (a warning) fails the load instead of passing unnoticed.

use std::io::Read;
use std::path::Path;

use dbcadence_e2e::*;

/// Every column type the rewrite takes, with values that need escaping in one format or the
/// other: tabs, newlines, backslashes before N, % and _, quotes, NUL, Ctrl-Z, emoji, latin1,
/// every byte value in a binary column, bytes that start a UTF-8 sequence before an escape,
/// the string 'NULL' beside NULL, empty strings, extreme numbers and dates. A second table with
/// a BIT column keeps its INSERT statements.
fn make_hostile_rows(name: &str) {
    let mut engine = connect(my());
    engine.drop_database(name).unwrap();
    engine.create_database(name).unwrap();
    let every_byte: String = (0..=255u8).map(|b| format!("{b:02X}")).collect();
    let sql = format!(
        "CREATE TABLE `hostile rows` (id int PRIMARY KEY, s varchar(200) CHARACTER SET utf8mb4, l varchar(50) CHARACTER SET latin1, \
           b varbinary(300), bl longblob, c char(10), d decimal(20,6), f float, g double, dt datetime(6), ts timestamp NULL, dd date, \
           t time, y year, e enum('a','b c'), st set('x','y'), j json, u bigint unsigned, KEY by_s (s(20)), KEY by_d (d)) ENGINE=InnoDB; \
         INSERT INTO `hostile rows` VALUES \
           (1, CONCAT('a', CHAR(9), 'b', CHAR(10), 'c', CHAR(13), 'd', CHAR(92), 'N', CHAR(92), '%', CHAR(92), '_', CHAR(39), CHAR(34), CHAR(0), CHAR(26), '😀 é'), \
            'café', UNHEX('{every_byte}'), UNHEX(REPEAT('F05C74F09F5C6E0A5C005C4E0D09', 50)), 'pad  ', -12345678901234.123456, -1.5e-7, 6.02214076e23, \
            '2026-03-29 02:30:00.123456', '2026-03-29 02:30:00', '0000-00-00', '-838:59:59', 2155, 'b c', 'x,y', '{{\"k\": \"v\\\\\"q\", \"n\": [1, 2.5]}}', 18446744073709551615), \
           (2, '', NULL, '', NULL, 'NULL', 0, 0, 0, NULL, NULL, NULL, NULL, NULL, NULL, '', NULL, 0), \
           (3, 'NULL', 'N', UNHEX('5C4E'), UNHEX('5C'), '\\\\N', NULL, NULL, NULL, '1000-01-01', '1970-01-01 00:00:01', '9999-12-31', '00:00:00', 1901, 'a', 'y', '[]', NULL); \
         INSERT INTO `hostile rows` (id, s, b, bl, d, g) SELECT seq + 10, MD5(seq), RANDOM_BYTES(32), RANDOM_BYTES(200), seq / 7, seq * 1.1 FROM seq_1_to_3000; \
         CREATE TABLE flags (id int PRIMARY KEY, bits bit(5), note varchar(10)); \
         INSERT INTO flags VALUES (1, b'10101', 'x'), (2, NULL, NULL);"
    );
    engine.execute_in(Some(name), &sql).unwrap();
}

fn decompressed_dump(backup: &Path) -> Vec<u8> {
    let mut dump = Vec::new();
    zstd::stream::read::Decoder::new(std::fs::File::open(backup.join("dump.sql.zst")).unwrap())
        .unwrap()
        .read_to_end(&mut dump)
        .unwrap();
    dump
}

/// Every column of every row as hex, in key order: what the two restores must share.
fn contents(database: &str) -> Vec<Vec<Option<String>>> {
    let mut rows = query(
        my(),
        database,
        "SELECT id, HEX(s), HEX(l), HEX(b), HEX(bl), HEX(c), d, f, g, dt, ts, dd, t, y, e, st, HEX(j), u FROM `hostile rows` ORDER BY id",
    );
    rows.extend(query(
        my(),
        database,
        "SELECT id, HEX(bits), note, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL FROM flags ORDER BY id",
    ));
    rows
}

#[test]
fn rows_loaded_as_load_data_are_the_rows_a_plain_restore_gets() {
    let dir = tempfile::tempdir().unwrap();
    let name = format!("{} -h", unique("rows"));
    make_hostile_rows(&name);
    let path = backed_up(my(), &name, dir.path());
    let dump = decompressed_dump(&path);
    let mut engine = connect(my());

    // The plain way: the dump fed to the mariadb client.
    let plain = format!("{name} plain");
    engine.create_database(&plain).unwrap();
    let plan = engine.restore_plan(&plain, 1).unwrap();
    let mut client = duct::cmd(&plan.program, &plan.args).stdin_bytes(dump.clone());
    for (key, value) in &plan.env {
        client = client.env(key, value);
    }
    client.run().expect("the plain restore");

    // Verification's load.
    let fast = format!("{name} fast");
    engine.create_database(&fast).unwrap();
    let load = engine
        .load_dump(&fast, &mut std::io::Cursor::new(dump), 2)
        .unwrap()
        .expect("a dump the fast load understands");
    assert_eq!(load.tables_as_load_data, 1, "{load:?}");
    assert_eq!(load.keys_built_after, 1, "{load:?}");

    let expected = contents(&plain);
    assert_eq!(expected.len(), 3 + 3000 + 2);
    assert_eq!(
        expected[0][1].as_deref(),
        Some(
            "610962 0A630D64 5C4E5C255C5F2722001AF09F988020C3A9"
                .replace(' ', "")
                .as_str()
        ),
        "the source's first string as the test means it"
    );
    let found = contents(&fast);
    for (want, got) in expected.iter().zip(&found) {
        assert_eq!(want, got, "row {:?}", want[0]);
    }
    assert_eq!(expected.len(), found.len());
    for database in [&name, &plain, &fast] {
        engine.drop_database(database).unwrap();
    }
}

#[test]
fn a_row_the_server_would_change_on_the_way_fails_the_load() {
    let dir = tempfile::tempdir().unwrap();
    let name = unique("warned");
    let mut engine = connect(my());
    engine.create_database(&name).unwrap();
    engine
        .execute_in(
            Some(&name),
            "CREATE TABLE t (id int PRIMARY KEY, n int); INSERT INTO t VALUES (1, 1), (2, 2);",
        )
        .unwrap();
    let path = backed_up(my(), &name, dir.path());
    // A value an INSERT in the dump's sql_mode would quietly turn into 0 (with a warning).
    let dump = String::from_utf8(decompressed_dump(&path)).unwrap();
    let edited = dump.replace("(2,2)", "(2,'two')");
    assert_ne!(edited, dump);
    let fast = format!("{name}_fast");
    engine.create_database(&fast).unwrap();
    let error = engine
        .load_dump(&fast, &mut std::io::Cursor::new(edited.into_bytes()), 2)
        .expect_err("a warning fails the load");
    let text = error.to_string();
    assert!(
        text.contains("loading the rows of `t` added") && text.contains("1 warnings"),
        "{text}"
    );
    assert!(text.contains("Incorrect integer value"), "{text}");
    for database in [&name, &fast] {
        engine.drop_database(database).unwrap();
    }
}
