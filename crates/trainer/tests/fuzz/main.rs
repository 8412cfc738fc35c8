//! Property-based mutation tests of every reader of user files: thousands of truncated,
//! bit-flipped, overwritten and resized variants of valid files per reader. Each must end in a
//! correct read or a clear error naming the file — never a panic — and may allocate no more than
//! a bound set by the file's own size (a damaged size field must not make it allocate what the
//! field claims). The valid files are the committed real MNIST slice, zoo weights as Bulwark
//! writes them, and the recipes in `configs/`.

mod alloc;
mod configs;
mod images;
mod mutate;
mod weights;
