// SVGDocument: charts laid out in a grid in one SVG file (e.g. quality per exit next to
// measured speed per exit), with an optional overall title.
import Foundation

public struct SVGDocument {
    public var panels: [LineChart]
    public var columns: Int
    public var title: String

    public init(panels: [LineChart], columns: Int = 2, title: String = "") {
        self.panels = panels
        self.columns = columns
        self.title = title
    }

    public func svg() -> String {
        let rendered = panels.enumerated().map { $0.element.render(id: "p\($0.offset)") }
        let columns = Swift.max(1, Swift.min(self.columns, rendered.count))
        let rows = (rendered.count + columns - 1) / columns
        // Each grid cell is as wide as its column's widest panel and as tall as its row's tallest.
        var widths = [Double](repeating: 0, count: columns), heights = [Double](repeating: 0, count: rows)
        for (i, panel) in rendered.enumerated() {
            widths[i % columns] = Swift.max(widths[i % columns], panel.width)
            heights[i / columns] = Swift.max(heights[i / columns], panel.height)
        }
        let top = title.isEmpty ? 0 : 40.0
        let width = Swift.max(1, widths.reduce(0, +)), height = Swift.max(1, top + heights.reduce(0, +))
        var s = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
        s += "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"\(n(width))\" height=\"\(n(height))\" "
            + "viewBox=\"0 0 \(n(width)) \(n(height))\" font-family=\"Helvetica, Arial, sans-serif\">\n"
        let name = title.isEmpty ? panels.map(\.title).filter { !$0.isEmpty }.joined(separator: "; ") : title
        if !name.isEmpty { s += "<title>\(escapeXML(name))</title>\n" }
        s += "<rect width=\"\(n(width))\" height=\"\(n(height))\" fill=\"#ffffff\"/>\n"
        if !title.isEmpty { s += text(title, x: width / 2, y: 28, size: 18, anchor: "middle", extra: " font-weight=\"bold\"") }
        for (i, panel) in rendered.enumerated() {
            let x = widths[..<(i % columns)].reduce(0, +), y = top + heights[..<(i / columns)].reduce(0, +)
            s += "<g transform=\"translate(\(n(x)),\(n(y)))\">\n" + panel.body + "</g>\n"
        }
        return s + "</svg>\n"
    }

    public func write(to path: String) throws {
        try svg().write(to: URL(fileURLWithPath: path), atomically: true, encoding: .utf8)
    }
}

/// Text made safe for XML content and attribute values: the five special characters become
/// entities, and characters XML 1.0 forbids (control characters) are left out.
func escapeXML(_ s: String) -> String {
    var out = ""
    out.reserveCapacity(s.utf8.count)
    for u in s.unicodeScalars {
        switch u {
        case "&": out += "&amp;"
        case "<": out += "&lt;"
        case ">": out += "&gt;"
        case "\"": out += "&quot;"
        case "'": out += "&apos;"
        case "\t", "\n", "\r": out += " "
        default:
            if u.value < 0x20 || u.value == 0xFFFE || u.value == 0xFFFF { continue }
            out.unicodeScalars.append(u)
        }
    }
    return out
}
