mod auth;
mod bad_input;
mod nodes;
mod openapi;
