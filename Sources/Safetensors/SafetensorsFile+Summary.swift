extension SafetensorsFile {
    /// A human-readable listing: a header line with the tensor count and data size, then one line per
    /// tensor sorted by name with its dtype and shape in aligned columns, e.g.
    ///
    /// ```
    /// 2 tensors, 152 bytes of data
    /// proj.bias    F32  [6]
    /// proj.weight  F16  [4, 16]
    /// ```
    public func summaryLines() -> [String] {
        let sorted = tensors.sorted { $0.name < $1.name }
        let dataBytes = fileSize - dataStart
        var lines = ["\(sorted.count) \(sorted.count == 1 ? "tensor" : "tensors"), \(dataBytes) bytes of data"]
        let nameWidth = sorted.map(\.name.count).max() ?? 0
        let dtypeWidth = sorted.map(\.dtype.rawValue.count).max() ?? 0
        for info in sorted {
            let name = info.name + String(repeating: " ", count: nameWidth - info.name.count)
            let dtype = info.dtype.rawValue + String(repeating: " ", count: dtypeWidth - info.dtype.rawValue.count)
            let shape = "[" + info.shape.map(String.init).joined(separator: ", ") + "]"
            lines.append("\(name)  \(dtype)  \(shape)")
        }
        return lines
    }
}
