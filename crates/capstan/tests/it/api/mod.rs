mod auth;
pub(crate) mod bad_input;
mod nodes;
mod openapi;
mod text_input;
