// mpq tokenize SOURCE (--text STRING | --file PATH) [--no-special] [--parse-special] [--json]
// mpq tokenize SOURCE --hf-out DIR [--max-context N] [--force]
// Prints the token ids of a text, space-separated on one line, or as JSON. SOURCE is a GGUF
// file, a directory with tokenizer.json, a tokenizer.json, or a llama2.c tokenizer file (or a
// llama2.c checkpoint together with --tokenizer). With --hf-out, writes the tokenizer instead as
// Hugging Face files (tokenizer.json, tokenizer_config.json, generation_config.json) into DIR.
#include <cstdio>
#include <fstream>
#include <iterator>
#include <string>

#include <nlohmann/json.hpp>

#include "command.h"
#include "io/read_file.h"
#include "io/tokenizer_hf_writer.h"
#include "mpq/error.h"
#include "mpq/tokenizer.h"

namespace mpq::cli {
namespace {

struct TokenizeOptions {
  std::string source;
  std::string tokenizer;
  std::string text;
  std::string file;
  int32_t vocab_size = 0;
  bool no_special = false;
  bool parse_special = false;
  bool json = false;
  std::string hf_out;
  int64_t max_context = 0;
  bool force = false;
};

int run_tokenize(const TokenizeOptions& o) {
  std::string text = o.text;
  if (!o.file.empty()) {
    text = read_file(o.file, "text file");
  }
  const auto tokenizer = load_tokenizer(o.source, o.tokenizer, o.vocab_size);
  if (!o.hf_out.empty()) {
    const std::string& source = o.tokenizer.empty() ? o.source : o.tokenizer;
    write_hf_tokenizer_dir(tokenizer->spec(), source, o.max_context, o.hf_out,
                           {{o.source, o.tokenizer}, o.force});
    std::printf("wrote %s (tokenizer.json, tokenizer_config.json, generation_config.json)\n",
                o.hf_out.c_str());
    return 0;
  }
  const std::vector<int32_t> ids = tokenizer->encode(text, !o.no_special, o.parse_special);
  if (o.json) {
    nlohmann::json out = {{"ids", ids}, {"n_tokens", ids.size()}};
    std::printf("%s\n", out.dump().c_str());
    return 0;
  }
  std::string line;
  line.reserve(ids.size() * 6);
  for (size_t i = 0; i < ids.size(); ++i) {
    if (i) line += ' ';
    line += std::to_string(ids[i]);
  }
  std::printf("%s\n", line.c_str());
  return 0;
}

Registrar registrar{{
    "tokenize",
    "Print the token ids of a text",
    [](CLI::App& sub) -> std::function<int()> {
      auto o = std::make_shared<TokenizeOptions>();
      sub.add_option("source", o->source,
                     "GGUF file, directory with tokenizer.json, tokenizer.json, llama2.c "
                     "tokenizer file, or llama2.c checkpoint (with --tokenizer)")
          ->required();
      auto* text = sub.add_option("--text", o->text, "Text to tokenize");
      auto* file = sub.add_option("--file", o->file, "File whose bytes to tokenize");
      text->excludes(file);
      sub.add_option("--tokenizer", o->tokenizer,
                     "Tokenizer to use instead of the one SOURCE holds (any form above)");
      sub.add_option("--vocab-size", o->vocab_size,
                     "Entries in a llama2.c tokenizer file (default: all up to the end of file)");
      sub.add_flag("--no-special", o->no_special, "Do not add BOS/EOS");
      sub.add_flag("--parse-special", o->parse_special,
                   "Turn the text of control/unknown tokens into those tokens");
      sub.add_flag("--json", o->json, "Print {\"ids\": [...], \"n_tokens\": N}");
      auto* hf_out = sub.add_option("--hf-out", o->hf_out,
                                    "Write the tokenizer as Hugging Face tokenizer.json, "
                                    "tokenizer_config.json and generation_config.json into this "
                                    "directory instead of tokenizing");
      hf_out->excludes(text)->excludes(file);
      sub.add_option("--max-context", o->max_context,
                     "With --hf-out: model_max_length for tokenizer_config.json (default: omitted)")
          ->check(CLI::NonNegativeNumber);
      sub.add_flag("--force", o->force, "With --hf-out: replace an existing directory mpq did not write");
      return [o, text, file, hf_out] {
        if (text->count() == 0 && file->count() == 0 && hf_out->count() == 0) {
          throw Error("tokenize: give --text STRING, --file PATH or --hf-out DIR");
        }
        return run_tokenize(*o);
      };
    },
}};

}  // namespace
}  // namespace mpq::cli
