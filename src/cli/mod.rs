pub mod analysis;
pub mod audio;
