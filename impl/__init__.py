"""Echo servers and the client.

select_server        the reference: the seed's select() design, made correct
client               the seed's interactive client
seed_echo_server     the seed's first server, defects intact
seed_upper_server    the seed's "complete" uppercase server, defects intact
"""
