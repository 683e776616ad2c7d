fn main() {
    // A vendored protoc: nothing to install with apt.
    // SAFETY: build scripts are single-threaded; nothing else reads the environment concurrently.
    unsafe { std::env::set_var("PROTOC", protoc_bin_vendored::protoc_bin_path().expect("vendored protoc")) };
    println!("cargo:rerun-if-changed=../../proto/herald/control/v1/control.proto");
    tonic_prost_build::configure()
        .compile_protos(&["../../proto/herald/control/v1/control.proto"], &["../../proto"])
        .expect("control.proto compiles");
}
