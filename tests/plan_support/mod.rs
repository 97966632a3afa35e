//! Shared by the plan tests that run real services from rendered files.

use std::os::unix::fs::PermissionsExt;

use amqctl::render::{FileKind, RenderedPlan};

/// Writes every service file to its destination with its mode (what deploy
/// does on a host); the hosts block and client files are skipped.
pub fn install(plan: &RenderedPlan) {
    for f in plan.files().filter(|f| f.kind != FileKind::HostsBlock) {
        if f.dest.as_os_str().is_empty() {
            continue; // client files have no destination
        }
        std::fs::create_dir_all(f.dest.parent().unwrap()).unwrap();
        std::fs::write(&f.dest, &f.contents).unwrap();
        std::fs::set_permissions(&f.dest, std::fs::Permissions::from_mode(f.mode)).unwrap();
    }
}
