import Tensors

/// Rotary tables for a joint `[text; video]` sequence: identity rows (cos 1, sin 0) for the
/// `leadingRows` tokens diffusers leaves unrotated, then `tables` (`[S, Dh]` each).
func rotaryTables(
    _ tables: (cos: Tensor, sin: Tensor), unrotatedLeadingRows leadingRows: Int
) throws(TensorError) -> (cos: Tensor, sin: Tensor) {
    let d = tables.cos.shape[1]
    let ones = try Tensor(shape: [leadingRows, d], repeating: 1), zeros = try Tensor(zeros: [leadingRows, d])
    return (try Tensor.concatenate([ones, tables.cos], axis: 0), try Tensor.concatenate([zeros, tables.sin], axis: 0))
}
