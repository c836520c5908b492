//! `dbcadence schedule`: schedules as code (validate a file, print the JSON Schema or the
//! shipped templates) and `schedule install` (the timers).

use std::path::PathBuf;

use clap::Subcommand;
use dbcadence_core::Result;

use crate::{ops, print_json};

#[derive(Subcommand)]
pub(crate) enum ScheduleAction {
    /// Check a schedule file; every problem is printed with the path of its key.
    Validate { file: PathBuf },
    /// Print the JSON Schema of schedule files.
    Schema,
    /// Print the shipped templates (PostgreSQL and MySQL/MariaDB x production, staging, development).
    Init,
    /// Turn a schedule into systemd timers (or a cron file) that call `dbcadence run`.
    Install(Box<ops::InstallArgs>),
}

pub(crate) fn schedule(action: ScheduleAction) -> Result<()> {
    match action {
        ScheduleAction::Schema => print_json(&dbcadence_core::schedule::json_schema()),
        ScheduleAction::Install(args) => ops::install(*args),
        ScheduleAction::Init => {
            print!("{}", dbcadence_core::schedule::SHIPPED_TEMPLATES);
            Ok(())
        }
        ScheduleAction::Validate { file } => {
            let text = std::fs::read_to_string(&file)
                .map_err(|e| dbcadence_core::Error::io("read the schedule file", &file, e))?;
            match dbcadence_core::schedule::parse(&text) {
                Ok(schedule) => {
                    let tasks: usize = schedule.templates.iter().map(|t| t.tasks.len()).sum();
                    println!(
                        "{}: valid ({} templates, {tasks} task schedules, {} assignments)",
                        file.display(),
                        schedule.templates.len(),
                        schedule.assignments.len()
                    );
                    Ok(())
                }
                Err(problems) => {
                    for p in &problems {
                        println!("{}: {}: {}", file.display(), p.path, p.message);
                    }
                    Err(dbcadence_core::Error::invalid(
                        "schedule",
                        format!("{} problems in {}", problems.len(), file.display()),
                    ))
                }
            }
        }
    }
}
