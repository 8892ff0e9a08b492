pub mod analysis;
pub mod audio;
pub mod bench;
pub mod separation;
