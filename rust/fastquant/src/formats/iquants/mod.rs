pub mod grids;
pub mod iq1;
pub mod iq2;
pub mod iq3;
