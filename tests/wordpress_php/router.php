<?php
// Router of a throwaway test site (tests/wordpress.py), run as
//   AUTOMATION_WORDPRESS_SITE=<site dir> php -S 127.0.0.1:<port> -t /usr/share/wordpress router.php
// It plays the part Apache and Debian's /etc/wordpress/config-<host>.php play on a real install: the site's
// own wp-config (database, URLs, wp-content) is loaded before Debian's shared wp-config.php asks for
// /etc/wordpress/config-automation-tests.php (written by scripts/setup-wordpress), and every path that is not a
// file goes to index.php, as mod_rewrite would, so pretty permalinks and /wp-json/ work.

$site = getenv('AUTOMATION_WORDPRESS_SITE');
if (!$site || !is_file($site . '/wp-config.php')) {
    http_response_code(500);
    echo "AUTOMATION_WORDPRESS_SITE does not name a site directory\n";
    return true;
}
$path = rawurldecode(parse_url($_SERVER['REQUEST_URI'], PHP_URL_PATH) ?: '/');

// Uploads (and the themes and plugins linked into the site's wp-content) come from the site's own directory.
if (strpos($path, '/wp-content/') === 0) {
    $content = realpath($site . '/wp-content');
    $file = realpath($content . substr($path, strlen('/wp-content')));
    if ($file !== false && is_file($file) && substr($file, -4) !== '.php'
        && (strpos($file, $content . '/') === 0 || strpos($file, '/usr/share/wordpress/') === 0)) {
        $types = ['png' => 'image/png', 'jpg' => 'image/jpeg', 'jpeg' => 'image/jpeg', 'gif' => 'image/gif',
                  'webp' => 'image/webp', 'svg' => 'image/svg+xml', 'css' => 'text/css',
                  'js' => 'application/javascript', 'json' => 'application/json', 'txt' => 'text/plain'];
        $extension = strtolower(pathinfo($file, PATHINFO_EXTENSION));
        header('Content-Type: ' . ($types[$extension] ?? (mime_content_type($file) ?: 'application/octet-stream')));
        header('Content-Length: ' . filesize($file));
        readfile($file);
        return true;
    }
}

$root = $_SERVER['DOCUMENT_ROOT'];
$target = realpath($root . $path);
if ($target !== false && is_dir($target) && is_file($target . '/index.php')) {
    $target .= '/index.php';
}
if ($target === false || strpos($target, realpath($root) . '/') !== 0 || !is_file($target)) {
    $target = realpath($root . '/index.php');
} elseif (substr($target, -4) !== '.php') {
    return false;  // a static file of WordPress itself: the built-in server sends it
}

$script = substr($target, strlen(realpath($root)));
$_SERVER['SCRIPT_FILENAME'] = $target;
$_SERVER['SCRIPT_NAME'] = $script;
$_SERVER['PHP_SELF'] = $script;
unset($_SERVER['PATH_INFO']);
$_SERVER['WORDPRESS_CONFIG'] = 'automation-tests';
// Loaded here, at the top level, so its $table_prefix is the global WordPress reads.
require $site . '/wp-config.php';
chdir(dirname($target));
require $target;
