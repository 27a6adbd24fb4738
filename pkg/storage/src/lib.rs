//! Layer storage: unpacking layers safely, overlay mounts, image records, GC.
#![deny(unsafe_code)]
