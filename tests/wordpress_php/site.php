<?php
// Creates and removes a throwaway test site (tests/wordpress.py) without wp-cli, which Debian does not ship:
//   php site.php install <site dir> <title> <admin user> <admin email> <admin password> <permalink structure>
//       creates the site's database, runs WordPress's installer and prints, as JSON, the admin's id and a new
//       application password (shown once, as in the admin screens)
//   php site.php drop <site dir>
//       drops the site's database
// <site dir> holds the site's wp-config.php, as written by tests/wordpress.py.

if ($argc < 3) {
    fwrite(STDERR, "usage: php site.php install|drop <site dir> ...\n");
    exit(2);
}
[, $command, $site] = $argv;
$_SERVER['WORDPRESS_CONFIG'] = 'automation-tests';
require $site . '/wp-config.php';

function database(): mysqli {
    [$host, $port] = array_pad(explode(':', DB_HOST, 2), 2, '3306');
    mysqli_report(MYSQLI_REPORT_ERROR | MYSQLI_REPORT_STRICT);
    return new mysqli($host, DB_USER, DB_PASSWORD, '', (int) $port);
}

if ($command === 'drop') {
    database()->query('DROP DATABASE IF EXISTS `' . DB_NAME . '`');
    exit(0);
}
if ($command !== 'install' || $argc < 8) {
    fwrite(STDERR, "usage: php site.php install <site dir> <title> <user> <email> <password> <permalinks>\n");
    exit(2);
}
[, , , $title, $user, $email, $password, $permalinks] = $argv;
database()->query('CREATE DATABASE `' . DB_NAME . '` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci');

// What a web request would have: Debian's wp-config.php and WordPress read them.
$home = parse_url(WP_HOME);
$_SERVER['HTTP_HOST'] = $home['host'] . (isset($home['port']) ? ':' . $home['port'] : '');
$_SERVER['SERVER_NAME'] = $home['host'];
$_SERVER['SERVER_PORT'] = (string) ($home['port'] ?? 80);
$_SERVER['REQUEST_URI'] = '/';
$_SERVER['REQUEST_METHOD'] = 'GET';

define('WP_INSTALLING', true);
require ABSPATH . 'wp-load.php';

// There is no mail server: the installer's welcome mail would only fail, slowly or noisily.
function wp_new_blog_notification($blog_title, $blog_url, $user_id, $password) {
}
require_once ABSPATH . 'wp-admin/includes/upgrade.php';

$result = wp_install($title, $user, $email, false, '', wp_slash($password));
if (is_wp_error($result)) {
    fwrite(STDERR, $result->get_error_message() . "\n");
    exit(1);
}
update_option('permalink_structure', $permalinks);
delete_option('rewrite_rules');  // rebuilt, with the REST API's /wp-json/ rules, on the first request

$created = WP_Application_Passwords::create_new_application_password($result['user_id'], ['name' => 'automation tests']);
if (is_wp_error($created)) {
    fwrite(STDERR, $created->get_error_message() . "\n");
    exit(1);
}
// As the admin screen shows it, in groups of four; WordPress takes it with or without the spaces.
echo json_encode(['user_id' => $result['user_id'],
                  'application_password' => WP_Application_Passwords::chunk_password($created[0])]), "\n";
