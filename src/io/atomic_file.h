// Writing whole files atomically: the bytes go to "<path>.tmp", which is renamed over `path` only
// once complete, so readers never see a partial file and an interrupted run leaves the old one.
#pragma once

#include <string>

namespace mpq {

// Throws mpq::Error naming the file on any I/O error (the temporary file is removed).
void write_file_atomically(const std::string& path, const std::string& bytes);

}  // namespace mpq
