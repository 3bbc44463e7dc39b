// The echo server of Oracle's Java Tutorials ("Reading from and Writing to a
// Socket", https://docs.oracle.com/javase/tutorial/networking/sockets/readingWriting.html),
// as published (BSD licence, Copyright (c) 1995, 2013, Oracle and/or its affiliates).
//
//   java examples/plain/EchoServer.java PORT      (Java 11+: compiled at start)
//   pytest --echo-server-cmd "java examples/plain/EchoServer.java {port}" --echo-transform identity

import java.net.*;
import java.io.*;

public class EchoServer {
    public static void main(String[] args) throws IOException {

        if (args.length != 1) {
            System.err.println("Usage: java EchoServer <port number>");
            System.exit(1);
        }

        int portNumber = Integer.parseInt(args[0]);

        try (
            ServerSocket serverSocket =
                new ServerSocket(Integer.parseInt(args[0]));
            Socket clientSocket = serverSocket.accept();
            PrintWriter out =
                new PrintWriter(clientSocket.getOutputStream(), true);
            BufferedReader in = new BufferedReader(
                new InputStreamReader(clientSocket.getInputStream()));
        ) {
            String inputLine;
            while ((inputLine = in.readLine()) != null) {
                out.println(inputLine);
            }
        } catch (IOException e) {
            System.out.println("Exception caught when trying to listen on port "
                + portNumber + " or listening for a connection");
            System.out.println(e.getMessage());
        }
    }
}
