//! Maintenance windows (DESIGN §10): the resource and its validation (`window`), and when a
//! window is open (`schedule`, pure).

pub mod calendar;
pub mod schedule;
pub mod window;

pub use calendar::{Calendar, CalendarSync};
pub use schedule::{Occurrence, Schedule, ScheduleError};
pub use window::{
    apply, validate, MaintenanceWindow, Selector, WindowChange, WindowRequest, WindowSpec,
};
