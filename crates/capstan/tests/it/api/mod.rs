mod auth;
pub(crate) mod bad_input;
mod fuzz;
mod nodes;
mod openapi;
mod slow_clients;
mod text_input;
