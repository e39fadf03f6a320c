// Reads back the SVG the charts write, with Foundation's XML parser (a malformed document
// fails the test), so tests check elements and coordinates rather than substrings.
import Foundation
#if canImport(FoundationXML)
import FoundationXML
#endif
import XCTest

struct SVGElement {
    var name: String
    var attributes: [String: String]
    var text = ""
    /// The class attributes of the elements it sits in ("data", "legend").
    var groups: [String] = []
    func number(_ key: String) -> Double { Double(attributes[key] ?? "") ?? .nan }
}

final class SVGReader: NSObject, XMLParserDelegate {
    private(set) var elements: [SVGElement] = []
    private var open: [Int] = []
    private(set) var error: Error?

    /// The document's elements in order, or a test failure when it is not well-formed XML.
    static func parse(_ svg: String, file: StaticString = #filePath, line: UInt = #line) -> [SVGElement] {
        let reader = SVGReader()
        let parser = XMLParser(data: Data(svg.utf8))
        parser.delegate = reader
        let ok = parser.parse()
        XCTAssertTrue(ok, "not well-formed XML: \(String(describing: parser.parserError ?? reader.error))", file: file, line: line)
        return reader.elements
    }

    func parser(_ parser: XMLParser, didStartElement name: String, namespaceURI: String?, qualifiedName: String?,
                attributes: [String: String]) {
        let groups = open.compactMap { elements[$0].attributes["class"] }
        open.append(elements.count)
        elements.append(SVGElement(name: name, attributes: attributes, groups: groups))
    }

    func parser(_ parser: XMLParser, didEndElement name: String, namespaceURI: String?, qualifiedName: String?) {
        open.removeLast()
    }

    func parser(_ parser: XMLParser, foundCharacters string: String) {
        if let i = open.last { elements[i].text += string }
    }

    func parser(_ parser: XMLParser, parseErrorOccurred parseError: Error) { error = parseError }
}

extension Array where Element == SVGElement {
    func named(_ name: String) -> [SVGElement] { filter { $0.name == name } }
    func inside(_ group: String) -> [SVGElement] { filter { $0.groups.contains(group) } }
    /// The text of every <text> element.
    var texts: [String] { named("text").map(\.text) }
}

/// The points of an SVG path's "M x y Lx y …" data, one array per sub-path.
func subpaths(_ d: String) -> [[(Double, Double)]] {
    d.split(separator: "M").map { part in
        part.split(separator: "L").compactMap { pair in
            let xy = pair.split(separator: " ").compactMap { Double($0) }
            return xy.count == 2 ? (xy[0], xy[1]) : nil
        }
    }
}
