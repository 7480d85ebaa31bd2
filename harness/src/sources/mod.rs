//! Where artifacts come from, and the cache they land in: Debian's archive
//! through a private apt configuration, files by URL, package unpacking,
//! kernel source builds, module trees, vendored Go libraries, the Docker
//! engine the user has. Each source
//! knows how to get bytes; none knows which artifact they are for (that is
//! `provision`'s job) and none draws on the terminal (headway goes out as
//! events).

pub mod apt;
pub mod archive;
pub mod cache;
pub mod engine;
pub mod fetch;
pub mod gotool;
pub mod govendor;
pub mod k8sbuild;
pub mod kbuild;
pub mod modules;
pub mod oci;
pub mod ubuntu_index;
pub mod vmlinux;
