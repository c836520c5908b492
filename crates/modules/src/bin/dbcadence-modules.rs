//! Every module in one binary: what the shipped collection holds (`plugins/modules/db_*` link
//! to it). The module is the one Ansible names in the arguments, or the name it runs as.

fn main() {
    dbcadence_protocol::run_multi_call(dbcadence_modules::ALL)
}
