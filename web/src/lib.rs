//! lectern-web: Lectern's HTTP layer, shared by the roles that serve an API.
//!
//! It owns the one JSON error shape and its codes, access tokens and the request
//! extractor that checks them, rate limits and the client's address, the edge every
//! request passes (stock tower-http layers), request latency metrics, refusing requests whose backend is down, and the
//! server loop that times request heads. Handlers and domain logic live in the service crates.

pub mod auth;
pub mod edge;
pub mod http;
pub mod latency;
pub mod limits;
pub mod serve;
pub mod unavailable;
