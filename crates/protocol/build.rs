//! Generates the prost types of the compact wire schema (`proto/herald/v1/wire.proto`).
fn main() {
    // A vendored protoc: nothing to install with apt.
    // SAFETY: build scripts are single-threaded; nothing else reads the environment concurrently.
    unsafe { std::env::set_var("PROTOC", protoc_bin_vendored::protoc_bin_path().expect("vendored protoc")) };
    println!("cargo:rerun-if-changed=../../proto/herald/v1/wire.proto");
    prost_build::Config::new()
        // Payloads and ids are copied out of a received message once, into shared buffers.
        .bytes(["."])
        .compile_protos(&["../../proto/herald/v1/wire.proto"], &["../../proto"])
        .expect("wire.proto compiles");
}
