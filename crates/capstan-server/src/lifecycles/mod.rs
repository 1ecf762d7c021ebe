//! What lifecycles do by themselves, beside the promotion check of
//! `deployments::create` and the automatic phases of `deployments::promotion`.

pub mod retention;
