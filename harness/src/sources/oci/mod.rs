//! OCI and Docker images: references, the places images come from
//! (registries with anonymous token auth, `docker save` archives, OCI
//! layouts, the local Docker engine's store), applying layers with whiteouts, and building a one-layer image
//! from a folder. Provisioning caches what these return (`provision/image.rs`).

pub mod auth;
pub mod build;
pub mod engine;
pub mod layers;
pub mod reference;
pub mod source;
