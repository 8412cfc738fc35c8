//! Generates burn code (and a burnpack weights file) from the ONNX model at build time.

fn main() {
    println!("cargo:rerun-if-changed=model/small-cnn.onnx");
    burn_onnx::ModelGen::new()
        .input("model/small-cnn.onnx")
        .out_dir("model/")
        .run_from_script();
}
