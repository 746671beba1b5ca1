//! The service desk: fault reports, their SLA clocks and escalation.
//!
//! [`calendar`] is the lab's service calendar (opening hours, holidays) that
//! business time is counted in; [`sla`] is the pure SLA engine evaluated
//! over a ticket's clock history.

pub mod calendar;
pub mod sla;
