//! pvce's black-box tests, one binary: every module starts the real server
//! (or the real binary, or the libvirt module) against real SQLite, the real
//! local libvirtd with real QEMU guests, and headless Chromium for the UI.
//! `common` holds what they share: the test server, clients per user, the
//! tiny guest, the multi-node rig, and the gate that keeps the heaviest
//! tests alone (see `common::gate`).
//!
//! One binary instead of one per area: `common` and the library are linked
//! once, not once per file. Run an area with `cargo test --test it api::`,
//! one test with `cargo test --test it -- --exact api::login_sessions_logout_and_rate_limit`.

#![allow(clippy::unwrap_used)]

mod common;

mod alerts;
mod api;
mod audit;
mod backups;
mod balancer;
mod browser;
mod cas;
mod chaos;
mod classtime;
mod clipboard_agent;
mod cluster;
mod collect;
mod console;
mod console_viewer;
mod course_clipboard;
mod crash;
mod dbmove;
mod desk;
mod desk_shots;
mod http_contract;
mod kb;
mod labnets;
mod ldap;
mod leases;
mod libvirt_real;
mod monitor;
mod notices;
mod notify;
mod portable;
mod postgres;
mod reports;
mod serial_console;
mod share;
mod sign_in;
mod slo;
mod snapshots;
mod sso;
mod storage_full;
mod template_layers;
mod templates_tree;
mod term;
mod usage;
mod vm_lifecycle;
mod wall;
