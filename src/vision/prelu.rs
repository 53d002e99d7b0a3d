//! A load-time rewrite of ONNX `PRelu` nodes into operators ONNX Runtime runs fast.
//!
//! Why: ONNX Runtime's CPU `PRelu` kernel (measured with 1.32) applies a per-channel slope element
//! by element, about 50 times slower than a `Mul` of the same shape (3.8 ms against 0.08 ms on a
//! 64x112x112 tensor). It is also outside ONNX Runtime's NCHWc (blocked-channel) layout, so each
//! PRelu is wrapped in two layout reorders. SFace has 27 of them: they took more than half of its
//! inference time (28 ms -> 13 ms of CPU per face on one thread once rewritten), which made redeye
//! slower than OpenCV, whose DNN engine fuses PRelu into the convolution before it.
//!
//! Every `y = PRelu(x, s)` whose slope `s` is a constant of shape `[C, 1, 1]` (or `[1, C, 1, 1]`)
//! over a 4-D `x` becomes
//!
//! ```text
//! n = Relu(BatchNormalization(x, scale = -1))   max(-x, 0)
//! y = Add(x, BatchNormalization(n, scale = 1 - s))   x + (1 - s) max(-x, 0)
//! ```
//!
//! which is `x` where `x >= 0` and `x - (1 - s) x = s x` elsewhere. BatchNormalization with mean 0,
//! bias 0 and `var + epsilon == 1` exactly is an exact per-channel scale, which ONNX Runtime turns
//! into a 1x1 depthwise convolution inside the NCHWc layout, with the Relu and the Add fused into
//! it: two light passes over the tensor instead of PRelu plus two reorders. In float the result
//! differs from PRelu's by rounding only: SFace's embedding (norm about 3) moves by at most 2e-6.
//!
//! The model is edited at the protobuf wire level rather than through generated ONNX bindings:
//! only the graph's node and initializer lists change, every other byte is copied as it is, and a
//! model this code does not understand is left alone (the caller then loads the file unchanged).

use std::collections::HashMap;

/// `epsilon` and `var` for the scaling BatchNormalizations: both exact in f32 and summing to
/// exactly 1, so that `1 / sqrt(var + epsilon)` is exactly 1.
const EPSILON: f32 = 1.0 / 65536.0;
const VAR: f32 = 1.0 - EPSILON;

/// Rewrites the model's PRelu nodes (see the module doc). `Ok(None)` when there is nothing to
/// rewrite; `Err` when the bytes are not a protobuf this code can walk.
pub fn rewrite_prelu(model: &[u8]) -> Result<Option<Vec<u8>>, String> {
    let fields = parse(model)?;
    let Some(graph) = fields.iter().find(|f| f.num == MODEL_GRAPH) else {
        return Ok(None);
    };
    // BatchNormalization has had today's inputs and attributes since opset 9.
    if opset(&fields).is_none_or(|v| v < 9) {
        return Ok(None);
    }
    let Value::Bytes(graph_bytes) = graph.value else {
        return Err("ModelProto.graph is not a message".into());
    };
    let Some(new_graph) = rewrite_graph(graph_bytes)? else {
        return Ok(None);
    };
    let mut out = Vec::with_capacity(model.len() + new_graph.len() - graph_bytes.len());
    for f in &fields {
        if f.num == MODEL_GRAPH {
            put_bytes(&mut out, MODEL_GRAPH, &new_graph);
        } else {
            out.extend_from_slice(f.raw);
        }
    }
    Ok(Some(out))
}

// Field numbers from onnx.proto.
const MODEL_GRAPH: u32 = 7;
const MODEL_OPSET_IMPORT: u32 = 8;
const OPSET_DOMAIN: u32 = 1;
const OPSET_VERSION: u32 = 2;
const GRAPH_NODE: u32 = 1;
const GRAPH_INITIALIZER: u32 = 5;
const GRAPH_INPUT: u32 = 11;
const GRAPH_OUTPUT: u32 = 12;
const GRAPH_VALUE_INFO: u32 = 13;
const NODE_INPUT: u32 = 1;
const NODE_OUTPUT: u32 = 2;
const NODE_NAME: u32 = 3;
const NODE_OP_TYPE: u32 = 4;
const NODE_ATTRIBUTE: u32 = 5;
const NODE_DOMAIN: u32 = 7;
const ATTR_NAME: u32 = 1;
const ATTR_F: u32 = 2;
const ATTR_TYPE: u32 = 20;
const ATTR_TYPE_FLOAT: u64 = 1;
const TENSOR_DIMS: u32 = 1;
const TENSOR_DATA_TYPE: u32 = 2;
const TENSOR_FLOAT_DATA: u32 = 4;
const TENSOR_NAME: u32 = 8;
const TENSOR_RAW_DATA: u32 = 9;
const TENSOR_DATA_LOCATION: u32 = 14;
const DATA_TYPE_FLOAT: u64 = 1;
const VALUE_INFO_NAME: u32 = 1;
const VALUE_INFO_TYPE: u32 = 2;
const TYPE_TENSOR: u32 = 1;
const TENSOR_TYPE_SHAPE: u32 = 2;
const SHAPE_DIM: u32 = 1;

/// The version of the default ONNX operator set the model imports.
fn opset(model: &[Field<'_>]) -> Option<u64> {
    model.iter().filter(|f| f.num == MODEL_OPSET_IMPORT).find_map(|f| {
        let fields = parse(f.bytes()?).ok()?;
        let domain = fields.iter().find(|f| f.num == OPSET_DOMAIN).and_then(Field::bytes).unwrap_or_default();
        let version = fields.iter().find_map(|f| match (f.num, f.value) {
            (OPSET_VERSION, Value::Varint(v)) => Some(v),
            _ => None,
        });
        if domain.is_empty() || domain == b"ai.onnx" { version } else { None }
    })
}

fn rewrite_graph(graph: &[u8]) -> Result<Option<Vec<u8>>, String> {
    let fields = parse(graph)?;
    let initializers: HashMap<String, &[u8]> = fields
        .iter()
        .filter(|f| f.num == GRAPH_INITIALIZER)
        .filter_map(|f| f.bytes())
        .filter_map(|t| Some((string_field(t, TENSOR_NAME)?, t)))
        .collect();
    let ranks: HashMap<String, usize> = fields
        .iter()
        .filter(|f| matches!(f.num, GRAPH_INPUT | GRAPH_OUTPUT | GRAPH_VALUE_INFO))
        .filter_map(|f| value_info_rank(f.bytes()?))
        .collect();

    let (mut nodes, mut tensors, mut rewritten) = (Vec::new(), Vec::new(), 0);
    for f in fields.iter().filter(|f| f.num == GRAPH_NODE) {
        let bytes = f.bytes().ok_or("GraphProto.node is not a message")?;
        let node = Node::parse(bytes)?;
        match prelu_slope(&node, &initializers, &ranks) {
            Some(slope) => {
                rewritten += 1;
                expand(&node, &slope, rewritten, &mut nodes, &mut tensors);
            }
            None => nodes.push(bytes.to_vec()),
        }
    }
    if rewritten == 0 {
        return Ok(None);
    }
    // Nodes first, in their original order (now expanded), then everything else as it was, then
    // the new initializers. Protobuf allows repeated fields in any order of appearance.
    let mut out = Vec::with_capacity(graph.len() + tensors.iter().map(Vec::len).sum::<usize>());
    for n in &nodes {
        put_bytes(&mut out, GRAPH_NODE, n);
    }
    for f in fields.iter().filter(|f| f.num != GRAPH_NODE) {
        out.extend_from_slice(f.raw);
    }
    for t in &tensors {
        put_bytes(&mut out, GRAPH_INITIALIZER, t);
    }
    Ok(Some(out))
}

/// The fields of a NodeProto this rewrite reads.
struct Node {
    inputs: Vec<String>,
    outputs: Vec<String>,
    name: String,
    op_type: String,
    domain: String,
}

impl Node {
    fn parse(bytes: &[u8]) -> Result<Node, String> {
        let mut n = Node {
            inputs: vec![],
            outputs: vec![],
            name: String::new(),
            op_type: String::new(),
            domain: String::new(),
        };
        for f in parse(bytes)? {
            let Some(s) = f.bytes().map(|b| String::from_utf8_lossy(b).into_owned()) else { continue };
            match f.num {
                NODE_INPUT => n.inputs.push(s),
                NODE_OUTPUT => n.outputs.push(s),
                NODE_NAME => n.name = s,
                NODE_OP_TYPE => n.op_type = s,
                NODE_DOMAIN => n.domain = s,
                _ => {}
            }
        }
        Ok(n)
    }
}

/// The per-channel slope of a PRelu node this rewrite can handle, else `None`.
fn prelu_slope(
    node: &Node,
    inits: &HashMap<String, &[u8]>,
    ranks: &HashMap<String, usize>,
) -> Option<Vec<f32>> {
    let standard = node.domain.is_empty() || node.domain == "ai.onnx";
    if node.op_type != "PRelu" || !standard || node.inputs.len() != 2 || node.outputs.len() != 1 {
        return None;
    }
    // BatchNormalization scales axis 1: only right when x is NCHW and the slope is per channel.
    if ranks.get(&node.inputs[0]) != Some(&4) {
        return None;
    }
    let (dims, data) = float_tensor(inits.get(&node.inputs[1])?)?;
    let c = match dims.as_slice() {
        [c, 1, 1] | [1, c, 1, 1] => *c as usize,
        _ => return None,
    };
    (data.len() == c && c > 0).then_some(data)
}

/// Appends the replacement nodes and their constants (see the module doc).
fn expand(node: &Node, slope: &[f32], index: usize, nodes: &mut Vec<Vec<u8>>, tensors: &mut Vec<Vec<u8>>) {
    let c = slope.len();
    let base = if node.name.is_empty() { &node.outputs[0] } else { &node.name };
    let name = |s: &str| format!("{base}/redeye_prelu{index}/{s}");
    let (x, y) = (node.inputs[0].as_str(), node.outputs[0].as_str());
    let (minus_one, one_minus_slope, zero, var) =
        (name("minus_one"), name("one_minus_slope"), name("zero"), name("var"));
    tensors.push(tensor(&minus_one, &vec![-1.0; c]));
    tensors.push(tensor(&one_minus_slope, &slope.iter().map(|s| 1.0 - s).collect::<Vec<_>>()));
    tensors.push(tensor(&zero, &vec![0.0; c]));
    tensors.push(tensor(&var, &vec![VAR; c]));
    let (negated, neg, scaled) = (name("negated"), name("neg"), name("scaled"));
    let eps = attribute_f("epsilon", EPSILON);
    let bn_inputs = [x, &minus_one, &zero, &zero, &var];
    nodes.push(node_proto("BatchNormalization", &bn_inputs, &negated, &name("negate"), &eps));
    nodes.push(node_proto("Relu", &[&negated], &neg, &name("relu"), &[]));
    let bn_inputs = [neg.as_str(), &one_minus_slope, &zero, &zero, &var];
    nodes.push(node_proto("BatchNormalization", &bn_inputs, &scaled, &name("scale"), &eps));
    nodes.push(node_proto("Add", &[x, &scaled], y, &name("add"), &[]));
}

fn node_proto(op: &str, inputs: &[&str], output: &str, name: &str, attribute: &[u8]) -> Vec<u8> {
    let mut n = Vec::new();
    for i in inputs {
        put_bytes(&mut n, NODE_INPUT, i.as_bytes());
    }
    put_bytes(&mut n, NODE_OUTPUT, output.as_bytes());
    put_bytes(&mut n, NODE_NAME, name.as_bytes());
    put_bytes(&mut n, NODE_OP_TYPE, op.as_bytes());
    if !attribute.is_empty() {
        put_bytes(&mut n, NODE_ATTRIBUTE, attribute);
    }
    n
}

fn attribute_f(name: &str, v: f32) -> Vec<u8> {
    let mut a = Vec::new();
    put_bytes(&mut a, ATTR_NAME, name.as_bytes());
    put_key(&mut a, ATTR_F, WIRE_FIXED32);
    a.extend_from_slice(&v.to_le_bytes());
    put_varint_field(&mut a, ATTR_TYPE, ATTR_TYPE_FLOAT);
    a
}

/// A 1-D float TensorProto.
fn tensor(name: &str, data: &[f32]) -> Vec<u8> {
    let mut t = Vec::new();
    put_varint_field(&mut t, TENSOR_DIMS, data.len() as u64);
    put_varint_field(&mut t, TENSOR_DATA_TYPE, DATA_TYPE_FLOAT);
    put_bytes(&mut t, TENSOR_NAME, name.as_bytes());
    let raw: Vec<u8> = data.iter().flat_map(|v| v.to_le_bytes()).collect();
    put_bytes(&mut t, TENSOR_RAW_DATA, &raw);
    t
}

/// Dims and values of a float TensorProto stored inside the model, else `None`.
fn float_tensor(bytes: &[u8]) -> Option<(Vec<i64>, Vec<f32>)> {
    let (mut dims, mut data, mut raw, mut is_float) = (Vec::new(), Vec::new(), None, false);
    for f in parse(bytes).ok()? {
        match (f.num, f.value) {
            (TENSOR_DIMS, Value::Varint(d)) => dims.push(d as i64),
            (TENSOR_DIMS, Value::Bytes(packed)) => {
                dims.extend(varints(packed)?.into_iter().map(|d| d as i64))
            }
            (TENSOR_DATA_TYPE, Value::Varint(t)) => is_float = t == DATA_TYPE_FLOAT,
            (TENSOR_FLOAT_DATA, Value::Fixed32(v)) => data.push(f32::from_bits(v)),
            (TENSOR_FLOAT_DATA, Value::Bytes(packed)) => data.extend(le_floats(packed)?),
            (TENSOR_RAW_DATA, Value::Bytes(b)) => raw = Some(b),
            (TENSOR_DATA_LOCATION, Value::Varint(loc)) if loc != 0 => return None,
            _ => {}
        }
    }
    if let Some(b) = raw {
        data = le_floats(b)?;
    }
    is_float.then_some((dims, data))
}

fn le_floats(b: &[u8]) -> Option<Vec<f32>> {
    b.len()
        .is_multiple_of(4)
        .then(|| b.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect())
}

/// `(name, rank)` of a ValueInfoProto with a tensor type and a known shape.
fn value_info_rank(bytes: &[u8]) -> Option<(String, usize)> {
    let name = string_field(bytes, VALUE_INFO_NAME)?;
    let ty = message_field(bytes, VALUE_INFO_TYPE)?;
    let tensor = message_field(ty, TYPE_TENSOR)?;
    let shape = message_field(tensor, TENSOR_TYPE_SHAPE)?;
    let rank = parse(shape).ok()?.iter().filter(|f| f.num == SHAPE_DIM).count();
    Some((name, rank))
}

fn message_field(bytes: &[u8], num: u32) -> Option<&[u8]> {
    parse(bytes).ok()?.into_iter().find(|f| f.num == num)?.bytes()
}

fn string_field(bytes: &[u8], num: u32) -> Option<String> {
    message_field(bytes, num).map(|b| String::from_utf8_lossy(b).into_owned())
}

// --- Protobuf wire format: just enough to walk messages and write new ones. ---

const WIRE_VARINT: u8 = 0;
const WIRE_FIXED64: u8 = 1;
const WIRE_BYTES: u8 = 2;
const WIRE_FIXED32: u8 = 5;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Value<'a> {
    Varint(u64),
    Fixed64(u64),
    Bytes(&'a [u8]),
    Fixed32(u32),
}

/// One field of a message: its number, value, and its bytes as encoded (key included).
#[derive(Debug, Clone, Copy)]
struct Field<'a> {
    num: u32,
    value: Value<'a>,
    raw: &'a [u8],
}

impl<'a> Field<'a> {
    fn bytes(&self) -> Option<&'a [u8]> {
        match self.value {
            Value::Bytes(b) => Some(b),
            _ => None,
        }
    }
}

fn parse(buf: &[u8]) -> Result<Vec<Field<'_>>, String> {
    let mut fields = Vec::new();
    let mut pos = 0;
    while pos < buf.len() {
        let start = pos;
        let key = read_varint(buf, &mut pos)?;
        let num = u32::try_from(key >> 3).map_err(|_| "field number out of range")?;
        let take = |pos: &mut usize, n: usize| -> Result<&[u8], String> {
            let end = pos.checked_add(n).filter(|&e| e <= buf.len()).ok_or("truncated field")?;
            let s = &buf[*pos..end];
            *pos = end;
            Ok(s)
        };
        let value = match (key & 7) as u8 {
            WIRE_VARINT => Value::Varint(read_varint(buf, &mut pos)?),
            WIRE_FIXED64 => Value::Fixed64(u64::from_le_bytes(take(&mut pos, 8)?.try_into().unwrap())),
            WIRE_BYTES => {
                let len = usize::try_from(read_varint(buf, &mut pos)?).map_err(|_| "length out of range")?;
                Value::Bytes(take(&mut pos, len)?)
            }
            WIRE_FIXED32 => Value::Fixed32(u32::from_le_bytes(take(&mut pos, 4)?.try_into().unwrap())),
            w => return Err(format!("unsupported wire type {w} at byte {start}")),
        };
        fields.push(Field { num, value, raw: &buf[start..pos] });
    }
    Ok(fields)
}

fn read_varint(buf: &[u8], pos: &mut usize) -> Result<u64, String> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let b = *buf.get(*pos).ok_or("truncated varint")?;
        *pos += 1;
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Ok(v);
        }
    }
    Err("varint longer than 10 bytes".into())
}

fn varints(mut b: &[u8]) -> Option<Vec<u64>> {
    let mut out = Vec::new();
    while !b.is_empty() {
        let mut pos = 0;
        out.push(read_varint(b, &mut pos).ok()?);
        b = &b[pos..];
    }
    Some(out)
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_key(out: &mut Vec<u8>, num: u32, wire: u8) {
    put_varint(out, (u64::from(num) << 3) | u64::from(wire));
}

fn put_varint_field(out: &mut Vec<u8>, num: u32, v: u64) {
    put_key(out, num, WIRE_VARINT);
    put_varint(out, v);
}

fn put_bytes(out: &mut Vec<u8>, num: u32, b: &[u8]) {
    put_key(out, num, WIRE_BYTES);
    put_varint(out, b.len() as u64);
    out.extend_from_slice(b);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A ValueInfoProto `name: float[dims]`.
    fn value_info(name: &str, dims: &[u64]) -> Vec<u8> {
        let mut shape = Vec::new();
        for &d in dims {
            let mut dim = Vec::new();
            put_varint_field(&mut dim, 1, d); // dim_value
            put_bytes(&mut shape, SHAPE_DIM, &dim);
        }
        let mut tensor_type = Vec::new();
        put_varint_field(&mut tensor_type, 1, DATA_TYPE_FLOAT); // elem_type
        put_bytes(&mut tensor_type, TENSOR_TYPE_SHAPE, &shape);
        let mut ty = Vec::new();
        put_bytes(&mut ty, TYPE_TENSOR, &tensor_type);
        let mut vi = Vec::new();
        put_bytes(&mut vi, VALUE_INFO_NAME, name.as_bytes());
        put_bytes(&mut vi, VALUE_INFO_TYPE, &ty);
        vi
    }

    /// `y = PRelu(x, s)` with `x: [1, 2, 3, 3]`, `s: [2, 1, 1]` stored as packed float_data.
    fn prelu_model(x_rank: usize, opset: u64) -> Vec<u8> {
        let mut model_opset = Vec::new();
        let mut slope = Vec::new();
        for d in [2, 1, 1] {
            put_varint_field(&mut slope, TENSOR_DIMS, d);
        }
        put_varint_field(&mut slope, TENSOR_DATA_TYPE, DATA_TYPE_FLOAT);
        let floats: Vec<u8> = [0.25f32, -0.5].iter().flat_map(|v| v.to_le_bytes()).collect();
        put_bytes(&mut slope, TENSOR_FLOAT_DATA, &floats);
        put_bytes(&mut slope, TENSOR_NAME, b"s");
        let mut graph = Vec::new();
        put_bytes(&mut graph, GRAPH_NODE, &node_proto("PRelu", &["x", "s"], "y", "act", &[]));
        put_bytes(&mut graph, GRAPH_INITIALIZER, &slope);
        put_bytes(&mut graph, GRAPH_INPUT, &value_info("x", &[1, 2, 3, 3][4 - x_rank..]));
        put_bytes(&mut graph, GRAPH_OUTPUT, &value_info("y", &[1, 2, 3, 3]));
        put_bytes(&mut model_opset, OPSET_DOMAIN, b"");
        put_varint_field(&mut model_opset, OPSET_VERSION, opset);
        let mut model = Vec::new();
        put_varint_field(&mut model, 1, 7); // ir_version
        put_bytes(&mut model, MODEL_GRAPH, &graph);
        put_bytes(&mut model, MODEL_OPSET_IMPORT, &model_opset);
        model
    }

    fn ops(model: &[u8]) -> Vec<String> {
        let graph = message_field(model, MODEL_GRAPH).unwrap();
        let fields = parse(graph).unwrap();
        fields
            .iter()
            .filter(|f| f.num == GRAPH_NODE)
            .map(|f| Node::parse(f.bytes().unwrap()).unwrap().op_type)
            .collect()
    }

    #[test]
    fn varints_round_trip() {
        for v in [0u64, 1, 127, 128, 300, u64::from(u32::MAX), u64::MAX] {
            let mut b = Vec::new();
            put_varint(&mut b, v);
            assert_eq!(read_varint(&b, &mut 0).unwrap(), v);
        }
        assert!(read_varint(&[0x80], &mut 0).is_err());
    }

    #[test]
    fn prelu_becomes_a_scaled_relu_added_to_its_input() {
        let out = rewrite_prelu(&prelu_model(4, 13)).unwrap().expect("rewritten");
        assert_eq!(ops(&out), ["BatchNormalization", "Relu", "BatchNormalization", "Add"]);
        let graph = parse(message_field(&out, MODEL_GRAPH).unwrap()).unwrap();
        let inits: HashMap<String, (Vec<i64>, Vec<f32>)> = graph
            .iter()
            .filter(|f| f.num == GRAPH_INITIALIZER)
            .map(|f| {
                let t = f.bytes().unwrap();
                (string_field(t, TENSOR_NAME).unwrap(), float_tensor(t).unwrap())
            })
            .collect();
        assert_eq!(inits["s"], (vec![2, 1, 1], vec![0.25, -0.5]), "the original is kept");
        assert_eq!(inits["act/redeye_prelu1/one_minus_slope"], (vec![2], vec![0.75, 1.5]));
        assert_eq!(inits["act/redeye_prelu1/var"].1[0] + EPSILON, 1.0);
        // The graph's outputs and the other fields survive.
        assert!(graph.iter().any(|f| f.num == GRAPH_OUTPUT));
        assert_eq!(parse(&out).unwrap()[0].value, Value::Varint(7));
    }

    /// On the real SFace: every PRelu goes, and ONNX Runtime gives the same embedding as with
    /// the model unchanged.
    #[test]
    fn sface_rewritten_gives_the_same_output() {
        use crate::vision::{Runtime, SessionOptions};
        use ort::value::TensorRef;
        let model = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("models/face_recognition_sface_2021dec_fp32.onnx");
        let bytes = std::fs::read(&model).unwrap_or_else(|e| panic!("{}: {e}", model.display()));
        let rewritten = rewrite_prelu(&bytes).unwrap().expect("SFace has PRelu nodes");
        let ops = ops(&rewritten);
        assert!(!ops.iter().any(|o| o == "PRelu"), "{ops:?}");
        assert_eq!(ops.iter().filter(|o| *o == "BatchNormalization").count(), 29 + 2 * 27);

        let rt = Runtime::init(None).unwrap_or_else(|e| panic!("{e}"));
        // Pixel-like values, deterministic.
        let input: Vec<f32> =
            (0..3 * 112 * 112u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as f32).collect();
        let opts = SessionOptions { rewrite_prelu: false, ..SessionOptions::default() };
        let embed = |bytes: &[u8]| {
            let mut session = rt.session_from_memory(&model, bytes, &opts).unwrap_or_else(|e| panic!("{e}"));
            let x = TensorRef::from_array_view(([1usize, 3, 112, 112], &input[..])).unwrap();
            let out = session.run(ort::inputs!["data" => x]).unwrap();
            out["fc1"].try_extract_tensor::<f32>().unwrap().1.to_vec()
        };
        let (plain, fast) = (embed(&bytes), embed(&rewritten));
        let diff = plain.iter().zip(&fast).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
        let norm = plain.iter().map(|v| v * v).sum::<f32>().sqrt();
        eprintln!("SFace, PRelu rewritten: max difference {diff} (output norm {norm})");
        assert!(diff <= 1e-5 * norm, "max difference {diff} (norm {norm})");
    }

    #[test]
    fn unknown_or_unsuitable_models_are_left_alone() {
        // x of rank 3: BatchNormalization would scale the wrong axis.
        assert_eq!(rewrite_prelu(&prelu_model(3, 13)).unwrap(), None);
        // An opset older than today's BatchNormalization.
        assert_eq!(rewrite_prelu(&prelu_model(4, 8)).unwrap(), None);
        // No PRelu at all.
        let mut model = Vec::new();
        put_bytes(&mut model, MODEL_GRAPH, &[]);
        assert_eq!(rewrite_prelu(&model).unwrap(), None);
        // Not protobuf.
        assert!(rewrite_prelu(b"\x0b\x00").is_err());
    }
}
