//! amqctl: plan, deploy and verify ActiveMQ-style broker clusters from one
//! inventory file.
//!
//! The pipeline is `inventory` (raw TOML) → `topology` (validated, via
//! [`topology::Topology::load`]) → `render` (every file, start order, client
//! URLs, failure modes, via [`render::render`]) → the commands (`plan`, ...).

pub mod bench;
pub mod cli;
pub mod deploy;
pub mod destroy;
pub mod diag;
pub mod down;
pub mod executor;
pub mod failure;
pub mod inventory;
pub mod logs;
pub mod plan;
pub mod receive;
pub mod render;
pub mod send;
pub mod start;
pub mod status;
pub mod stop;
pub mod topology;
pub mod up;
mod validate;
pub mod verify;

pub use diag::{Diagnostic, Diagnostics};
pub use render::{render, RenderedPlan};
pub use topology::Topology;
