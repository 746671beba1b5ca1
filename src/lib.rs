//! pvce: a virtualized lab-environment orchestrator.
//!
//! The crate is one binary (`pvce`) whose library half is exposed so black-box
//! tests can start the real server on port 0.

pub mod libvirt;
