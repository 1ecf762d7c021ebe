mod auth;
pub(crate) mod bad_input;
mod nodes;
mod openapi;
mod slow_clients;
