//! One module per group of `burst` subcommands.

pub mod bench;
pub mod dev;
pub mod logs;
pub mod read;
pub mod simulate;
pub mod submit;
pub mod wait;
