#include "plugins/waf/builtin_rules.hpp"

namespace portico::plugins::waf {

namespace {

// A PHP comment: a block comment with any number of stars (system/***/('id')), or a line
// comment, which runs to its line's end, a CR or a LF (system#<LF>('id'), system//x<CR>('id')).
constexpr std::string_view kBlockComment = R"(/\*[^*]*\*+(?:[^/*][^*]*\*+)*/)";
constexpr std::string_view kLineComment = R"((?:#|//)[^\r\n]*[\r\n])";

// What PHP allows between tokens: whitespace and comments. Used after a comment between a
// function's name and its '(' (elsewhere kShortGap: a line comment costs Vectorscan more than
// the rest of a pattern).
const std::string& gap() {
  static const std::string g =
      "(?:\\s|" + std::string(kBlockComment) + "|" + std::string(kLineComment) + ")*";
  return g;
}

// Between other tokens: whitespace and simple block comments.
constexpr std::string_view kShortGap = R"((?:\s|/\*[^*]*\*/)*)";

// How the first argument of a code-running call starts, in forms prose never takes: a variable
// ($x, $$x, ${'x'}; not $250k, $$$), a backtick command, @ before a variable, a string or a
// call, ~ before a string or a variable (bitwise obfuscation; not ~2h, ~$5k), a cast or
// parenthesis, a heredoc, an array literal or one spread (...["id"]), a nested call, namespaced
// or not (eval(base64_decode(...)), \implode/**/(...)), a constant joined to more
// (PHP_BINARY."..."; not "(gsm8k_cot)"), a number or a constant in a condition (1 ? 'id' : 0,
// true?"id":0).
std::string strong_argument() {
  return R"((?:\$(?:[a-z_{]|\$+[a-z_{])|`|@\s*(?:[$"'~(]|[a-z_]\w*\s*\()|)"
         R"(~\s*(?:\$[a-z_{]|["'(\x80-\xff])|\(|<<<|\[\s*["'$\[]|\.\.\.\s*[\[$]|\\?[a-z_]\w*)" +
         std::string(kShortGap) + R"(\(|\w*_\w*\s*\.|(?:\d+|true|false|null)\s*(?:\?|&&|\|\|)))";
}

// name( : for names no English text uses (base64_decode, passthru, phpinfo).
std::string call(std::string_view name) {
  return R"(\b)" + std::string(name) + std::string(kShortGap) + R"(\()";
}

// For names that are English words (system, exec, eval, assert), where "the system (v2)",
// "system(s)", "exec ($250k/yr)", "eval (~2h)" and 'our booking system ("Atlas")' must pass:
// - name( or a comment before or right after the '(': code, whatever the argument looks like,
//   a string too;
// - whitespace before the '(': an argument only code has (strong_argument()),
// - or a string where code starts: the value's start, after ; { } = ( & | @ / \ > a quote or a
//   PHP tag, or right after ) , ? ! : + or a string's "." (`if(1)system ("id")`,
//   `"a".system ("id")`; not "Done. System ("Atlas")", "file-system ("ext4")" or
//   "[System ("Atlas")](https://...)").
BuiltinRule guarded_call(std::string id, std::string_view name) {
  const std::string bare(name);
  const std::string n = R"(\b)" + bare;
  const std::string g(kShortGap);
  const std::string comment =
      "(?:" + std::string(kBlockComment) + "|" + std::string(kLineComment) + ")";
  const std::string argument = "(?:" + strong_argument() + R"(|["']))";
  // PHP 8 named arguments: system(command: "id").
  const std::string named = R"((?:[a-z_]\w*\s*:\s*)?)";
  // The comment forms are apart, and `name#` is not after \b but after a byte that is not a
  // word's, or at the start (a pattern of its own): written otherwise (\b, or (?:^|[^\w])),
  // each of them doubled the scan cost of the whole set (measured with callgrind, Vectorscan
  // 5.4). A spaced `name #42` comment that starts with a digit (an issue number, "Failing eval
  // #42") counts only before a call whose argument is one string or variable.
  const std::string commented = gap() + R"(\()" + g + argument;
  return {
      std::move(id),
      n + R"(\()" + g + named + argument,
      true,
      {n + R"(\s*(?:)" + std::string(kBlockComment) + R"(|//[^\r\n]*[\r\n]))" + commented,
       R"([^a-z0-9_])" + bare + R"(#[^\r\n]*[\r\n])" + commented,
       "^" + bare + R"(#[^\r\n]*[\r\n])" + commented,
       n + R"(\s+#(?:[^\r\n\d][^\r\n]*)?[\r\n])" + commented,
       n + R"(\s+#\d[^\r\n]*[\r\n])" + gap() + R"(\()" + g + R"((?:["'][^"'\r\n]*["']|\$\w+)\s*\))",
       n + R"(\s*\(\s*)" + comment + gap() + argument, n + R"(\s+\()" + g + strong_argument(),
       // exec (command: $c): a named argument after a space only before a variable, since
       // prose says "exec (note: ...)"; exec(MY_CMD, $out): a bare constant, then a variable.
       n + R"(\s+\()" + g + R"([a-z_]\w*\s*:\s*\$\$*[a-z_{])",
       n + R"(\()" + g + R"([a-z_]\w*)" + g + "," + g + R"(\$[a-z_{])",
       R"((?:(?:^|[;{}=(&|@/\\>\n"'`]|<\?php)\s*|[),?!:+]|["']\.))" + bare + R"(\s+\()" + g +
           R"(["'])"}};
}

std::string with_gaps(std::string pattern) {
  for (size_t at; (at = pattern.find("{G}")) != std::string::npos;)
    pattern.replace(at, 3, kShortGap);
  return pattern;
}

constexpr std::string_view kDangerousNames =
    "system|exec|passthru|shell_exec|assert|eval|popen|proc_open|pcntl_exec|create_function";

std::vector<BuiltinRule> php_injection() {
  const std::string dangerous(kDangerousNames);
  const std::string include = R"(\b(?:include|require)(?:_once)?)";
  // php.ini settings an attacker sets: as PHP-CGI (-d name=value) and .htaccess (php_value name
  // value) take them. "name = x" with spaces is how people talk ("safe_mode = on in the game").
  const std::string ini = R"(allow_url_include|allow_url_fopen|auto_prepend_file|auto_append_file|)"
                          R"(disable_functions|open_basedir|safe_mode|suhosin\.[a-z_.]+)";
  // include("http://..."), include 'http://...'
  const std::string include_arg = include + with_gaps(R"({G}(?:\({G}["']?|["']){G})");
  return {
      // Code in a request
      {"php-open-tag", R"(<\?php)"},
      {"php-short-echo-tag", R"(<\?=)"},
      {"php-script-tag", R"(<script\s*language\s*=\s*["']?\s*php)"},
      {"php-base64-open-tag", "PD9waHA|PD9QSFA", false},  // base64 of "<?php" / "<?PHP"
      // Running code or commands
      guarded_call("php-eval", "eval"),
      guarded_call("php-assert", "assert"),
      guarded_call("php-system", "system"),
      guarded_call("php-exec", "exec"),
      {"php-passthru", call("passthru")},
      {"php-shell-exec", call("shell_exec")},
      {"php-popen", call("popen")},
      {"php-proc-open", call("proc_open")},
      {"php-pcntl-exec", call("pcntl_exec")},
      {"php-create-function", call("create_function")},
      {"php-call-user-func", call("call_user_func(?:_array)?")},
      {"php-callback-exec",
       with_gaps(R"(\b(?:array_map|array_filter|array_walk(?:_recursive)?|array_reduce|usort|)"
                 R"(uasort|uksort|register_shutdown_function|register_tick_function|)"
                 R"(iterator_apply|forward_static_call(?:_array)?|set_error_handler|)"
                 R"(set_exception_handler|ob_start|preg_replace_callback(?:_array)?){G}\()"
                 R"([^;]*["'](?:)") +
           dangerous + R"()["'])"},
      {"php-preg-replace-e",
       with_gaps(R"(\bpreg_replace{G}\({G}["'][^"']*[/#~|!@%+}\])][a-z]{0,8}e[a-z]{0,8}["'])")},
      {"php-mb-ereg-e",
       with_gaps(R"(\bmb_eregi?_replace{G}\([^)]*["'][a-z]{0,8}e[a-z]{0,8}["']{G}\))")},
      // ('system')('id'), ("sys"."tem")('id'): a quoted name called. The name comes first so
      // Vectorscan can start from it; prose never puts a quoted word right before ")(".
      {"php-quoted-function-call",
       with_gaps(R"(["'](?:)" + dangerous + R"(|phpinfo|base64_decode)["']{G}\){G}\()")},
      // "."-joined without spaces: with optional gaps the pattern has no literal to start from
      // and costs more than the rest of the set together.
      {"php-string-concat-call", with_gaps(R"(["']\.["'][a-z_]{1,30}["']{G}\){G}\()")},
      {"php-complex-variable",
       with_gaps(R"(\$\{{G}(?:@|(?:)" + dangerous +
                 R"(|print|print_r|var_dump|die|phpinfo|base64_decode|file_put_contents){G}\())")},
      {"php-superglobal",
       R"(\$(?:_(?:GET|POST|REQUEST|COOKIE|SERVER|FILES|ENV|SESSION)|GLOBALS)\b)"},
      // Including code from elsewhere
      {"php-include-url", include_arg + R"((?:(?:https?|ftps?|php|data|expect|phar|zip|glob|file|)"
                                        R"(compress\.(?:zlib|bzip2))://|data:))"},
      // The unquoted form is not valid PHP but is what probes send; only right after code (a
      // statement's end, a block, a PHP tag), not in prose or as a form value ("include
      // https://github.com/..." in a chat message).
      {"php-include-url-bare", R"((?:[;{}]|\?>|<\?php)\s*@?\s*(?:include|require)(?:_once)?\s+)"
                               R"((?:https?|ftps?|php|data|expect|phar)://)"},
      {"php-include-traversal",
       include_arg + R"((?:[^"')]*\.\./|/(?:etc|proc|var|tmp|dev|root|home)/))"},
      {"php-include-variable", include + with_gaps(R"({G}\({G}\$)")},
      // data: as PHP reads it (data://text/plain;base64,..., data://,..., data:;base64,...) but
      // not "see data://local", nor the data:image/png;base64 URLs of every web page.
      {"php-stream-wrapper",
       R"(\b(?:php|expect|phar|glob|zip|rar|ogg|compress\.zlib|compress\.bzip2|)"
       R"(ssh2\.(?:shell|exec|tunnel|sftp|scp))://|\bdata://[a-z]+/[\w.+-]+[;,]|)"
       R"(\bdata:(?://)?(?:;base64)?,)"},
      // Decoding an obfuscated payload
      {"php-base64-decode", call("base64_decode")},
      {"php-gzinflate", call("gzinflate")},
      {"php-gzuncompress", call("gzuncompress")},
      {"php-gzdecode", call("gzdecode")},
      {"php-str-rot13", call("str_rot13")},
      {"php-convert-uudecode", call("convert_uudecode")},
      {"php-strrev", call("strrev")},
      {"php-hex2bin", call("hex2bin")},
      {"php-chr-concat", with_gaps(R"(\bchr{G}\({G}\d+{G}\){G}\.{G}chr{G}\()")},
      {"php-hex-string", R"((?:\\x[0-9a-f]{2}){4})"},
      {"php-octal-string", R"((?:\\[0-7]{3}){4})"},
      // Files
      {"php-file-put-contents", call("file_put_contents")},
      guarded_call("php-file-get-contents", "file_get_contents"),
      {"php-file-write", with_gaps(R"(\b(?:fwrite|fputs){G}\({G}\$)")},
      {"php-move-uploaded-file", call("move_uploaded_file")},
      {"php-source-disclosure",
       call("(?:readfile|show_source|highlight_file|php_strip_whitespace)")},
      {"php-dir-listing", call("(?:scandir|opendir|readdir|glob)") + R"(\s*["'$])"},
      {"php-sensitive-file",
       call("(?:file|fopen|file_get_contents|readfile|include|require|include_once|"
            "require_once|highlight_file|show_source|copy|parse_ini_file)") +
           with_gaps(R"({G}["']?{G}(?:/etc/(?:passwd|shadow|hosts|group)|/proc/self/))")},
      // Reconnaissance and tampering
      {"php-phpinfo", call("phpinfo")},
      {"php-recon",
       call("(?:php_uname|get_current_user|getmypid|getmyuid|getmygid|posix_get(?:pwuid|uid|"
            "euid|gid|grgid|login)|posix_uname|ini_get_all|get_defined_(?:vars|functions|"
            "constants)|disk_(?:free|total)_space)")},
      {"php-ini-tamper",
       call("(?:ini_set|ini_alter|ini_restore|putenv|set_include_path|ignore_user_abort|"
            "set_time_limit)")},
      // As PHP-CGI (-d name=value), .htaccess (php_value name value) and an uploaded .user.ini
      // (auto_prepend_file = /tmp/x, allow_url_include = On) take them; "name = x" with spaces
      // is otherwise how people talk about them ("safe_mode = on in the game", "set
      // allow_url_fopen = On in php.ini").
      {"php-ini-directive", R"(\b(?:)" + ini + R"()=|-d\s*(?:)" + ini +
                                R"()\s*=|\bphp_(?:admin_)?(?:value|flag)\s+(?:)" + ini +
                                R"()\b|\bauto_(?:prepend|append)_file\s*=\s*["']?[/.a-z]|)"
                                R"(\ballow_url_include\s*=\s*["']?(?:on|1|true))"},
      {"php-md5-probe",
       with_gaps(R"(\b(?:print|printf|echo|die|exit|var_dump|print_r){G}\(?{G}md5{G}\()")},
      {"php-network",
       call("(?:fsockopen|pfsockopen|stream_socket_(?:client|server)|socket_create|curl_exec|"
            "curl_multi_exec)")},
      // Object injection through unserialize()
      {"php-unserialize", call("unserialize")},
      {"php-object-injection", R"(\bO:\d+:"[A-Za-z_\\][\w\\]*":\d+:\{)", false},
      {"php-halt-compiler", R"(\b__halt_compiler\b)"},
  };
}

struct NamedSet {
  std::string_view name;
  std::vector<BuiltinRule> rules;
};

const std::vector<NamedSet>& all_sets() {
  static const std::vector<NamedSet> sets = {{"php-injection", php_injection()}};
  return sets;
}

}  // namespace

const std::vector<BuiltinRule>* find_ruleset(std::string_view name) {
  for (const auto& set : all_sets())
    if (set.name == name) return &set.rules;
  return nullptr;
}

std::string ruleset_names() {
  std::string out;
  for (const auto& set : all_sets()) out += (out.empty() ? "" : ", ") + std::string(set.name);
  return out;
}

}  // namespace portico::plugins::waf
