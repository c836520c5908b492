//! The `db_restore` module as a binary of its own (the development build; the shipped collection
//! uses the multi-call binary `dbcadence-modules`).

fn main() {
    dbcadence_protocol::run_main::<dbcadence_modules::db_restore::DbRestore>()
}
