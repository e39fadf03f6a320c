// Which built-in template renders a model's own chat template: ChatML's markers name it,
// anything else is not guessed.
import XCTest
import SortedData

final class ChatTemplateDetectionTests: XCTestCase {
    func testChatMLTemplatesAreRecognisedAndOthersAreNot() {
        // SmolLM2-Instruct's template (as its GGUF and chat_template.jinja carry it).
        let smollm2 = """
        {% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system
        You are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>
        ' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}
        """
        XCTAssertEqual(PromptTemplate(chatTemplate: smollm2), .chatml)
        let llama2 = "{% for message in messages %}{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + message['content'] + ' [/INST]' }}{% endif %}{% endfor %}"
        XCTAssertNil(PromptTemplate(chatTemplate: llama2))
        let llama3 = "{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n' + message['content'] + '<|eot_id|>' }}"
        XCTAssertNil(PromptTemplate(chatTemplate: llama3))
        XCTAssertNil(PromptTemplate(chatTemplate: "<|im_start|> without its end"))
    }
}
